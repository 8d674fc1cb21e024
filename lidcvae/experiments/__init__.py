"""Experiments run on top of the library rather than stages of it: the seed's MNIST size table."""
