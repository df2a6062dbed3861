"""Where convert and pack run.

- `local` (default): this machine; convert and pack spread batches over worker processes
  (`gamelog.crew`). See `gamelog.convert` and `gamelog.pack`.
- `ray`: a Ray cluster through Ray Data (`gamelog.engines.ray_data`), running the same stage
  functions on blocks of the input and writing the same shard layout, report and manifest.
"""

ENGINES = ("local", "ray")
