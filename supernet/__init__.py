"""Elastic weight-sharing supernet: search spaces, elastic layers, export, cost, training."""

from .checkpoint import load_checkpoint, save_checkpoint
from .cost import macs, params
from .model import ElasticSupernet
from .space import Arch, SearchSpace, StageArch, load_space

__all__ = ["Arch", "ElasticSupernet", "SearchSpace", "StageArch", "load_checkpoint",
           "load_space", "macs", "params", "save_checkpoint"]
