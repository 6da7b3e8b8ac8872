"""Models: Autoencoder (dense), and the recommenders built on the same Network."""
