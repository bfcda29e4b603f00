"""Training datasets. Importing this package registers them in ``javisdit.registry.DATASETS``."""

from javisdit.datasets.bucket import Bucket
from javisdit.datasets.dataloader import build_dataloader, collate
from javisdit.datasets.datasets import BatchFeatureDataset, VariableVideoAudioTextDataset
from javisdit.datasets.sampler import VariableVideoBatchSampler

__all__ = ["BatchFeatureDataset", "Bucket", "VariableVideoAudioTextDataset", "VariableVideoBatchSampler",
           "build_dataloader", "collate"]
