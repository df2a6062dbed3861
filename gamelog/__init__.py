"""gamelog: LLM training data as logs of a two-player game (player 1: the human side, player 2: the model)."""

__version__ = "0.1.0"
