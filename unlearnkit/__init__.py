"""unlearnkit: make a trained PyTorch model forget chosen training samples, and show that it did."""

from unlearnkit import generation as _generation  # noqa: F401  (registers the generation task and `unet`)
from unlearnkit import methods as _methods  # noqa: F401  (registers every method)
from unlearnkit.eval.evaluate import evaluate
from unlearnkit.eval.metrics import avg_gap
from unlearnkit.registry import DATASETS, METHODS, MODELS
from unlearnkit.request import Batch, Pair, RequestError, UnlearnRequest, parse_forget
from unlearnkit.train import Recipe, train_model

__version__ = "0.1.0"

__all__ = ["DATASETS", "METHODS", "MODELS", "Batch", "Pair", "Recipe", "RequestError", "UnlearnRequest",
           "avg_gap", "evaluate", "parse_forget", "train_model", "__version__"]

from unlearnkit.api import make_request, unlearn  # noqa: E402

__all__ += ["make_request", "unlearn"]
