"""Ready-made hybrid models.

* :class:`KACQDCNN` / :class:`KACQClassifier`: the KAN + quantum dual-channel heart-disease
  classifier of Jahin et al. (arXiv 2410.07446) and its scikit-learn wrapper.
"""

from qnn.models.kacq import KACQClassifier, KACQDCNN, KerasLSTM, make_pqc

__all__ = ["KACQClassifier", "KACQDCNN", "KerasLSTM", "make_pqc"]
