"""Models: the dense Autoencoder and the recommenders (AutoRec, MultDAE, MultVAE, CDAE, EASE,
Popularity), all with the same fit / recommend / similar_items / save contract."""
from .autoencoder import Autoencoder
from .autorec import AutoRec
from .baselines import EASE, Popularity
from .recommender import Recommender
from .sparse_autoencoders import CDAE, MultDAE, MultVAE

__all__ = ["Autoencoder", "AutoRec", "CDAE", "EASE", "MultDAE", "MultVAE", "Popularity", "Recommender"]
