"""Class-conditional generation: a diffusion U-Net, its loss and samplers, the judge, the task.

Importing this package registers the `unet` model in `MODELS`.
"""

from unlearnkit.generation.diffusion import Schedule, denoising_loss, guided_eps, sample
from unlearnkit.generation.judge import frechet_distance, judge_outputs, load_or_train_judge
from unlearnkit.generation.task import Generation
from unlearnkit.generation.unet import NULL_LABEL, UNet

__all__ = ["NULL_LABEL", "Generation", "Schedule", "UNet", "denoising_loss", "frechet_distance",
           "guided_eps", "judge_outputs", "load_or_train_judge", "sample"]
