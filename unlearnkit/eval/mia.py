"""Membership-inference checks that a model has forgotten.

`mia_efficacy` is the SalUn-line MIA-Efficacy: an RBF SVC (C=3, gamma="auto") fitted on one
per-sample signal, retain samples as members (1) and test samples as non-members (0); the score
is the percentage of forget samples predicted non-member. Higher = more forget samples look
unseen; the target is Retrain's value, not 100.
"""

from __future__ import annotations

import numpy as np
from sklearn.svm import SVC
from torch import Tensor


def mia_efficacy(members: Tensor, nonmembers: Tensor, target: Tensor) -> float:
    x = np.concatenate([members.numpy(), nonmembers.numpy()]).reshape(-1, 1)
    y = np.concatenate([np.ones(len(members)), np.zeros(len(nonmembers))])
    attack = SVC(C=3, gamma="auto", kernel="rbf").fit(x, y)
    return 100.0 * float(1 - attack.predict(target.numpy().reshape(-1, 1)).mean())
