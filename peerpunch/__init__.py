"""peerpunch: peer-to-peer chat through NATs, standard library only."""

__version__ = "0.1.0"
