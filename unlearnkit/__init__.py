"""unlearnkit: make a trained PyTorch model forget chosen training samples, and show that it did."""

# Importing these registers the built-in datasets, data formats, models, tasks, methods and evaluations.
from unlearnkit import datasets, generation, methods, text, text_encoder, text_models  # noqa: F401
from unlearnkit.api import make_request, unlearn
from unlearnkit.data import load_data
from unlearnkit.evaluate import evaluate
from unlearnkit.method import METHODS, Method, build, check_fields, hp
from unlearnkit.metrics import avg_gap
from unlearnkit.registry import DATASETS, FORMATS, MODELS, TASKS
from unlearnkit.request import Batch, Pair, RequestError, UnlearnRequest, parse_forget
from unlearnkit.train import Recipe, train_model

__version__ = "0.2.0"

__all__ = ["DATASETS", "FORMATS", "METHODS", "MODELS", "TASKS", "Batch", "Method", "Pair", "Recipe", "RequestError",
           "UnlearnRequest", "avg_gap", "build", "check_fields", "evaluate", "hp", "load_data", "make_request",
           "parse_forget", "train_model", "unlearn", "__version__"]
