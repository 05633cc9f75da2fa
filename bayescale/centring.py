"""Which sites are sampled centred, and the map between the two forms.

A hierarchical value drawn as itself (centred) is a funnel when the data do
not pin it; drawn standardised (non-centred) it lies on a curved ridge with
its scale when they do. The rules here choose per family or group, from the
data alone (``inputs``: a :class:`~bayescale.model.ModelInputs`), and
:func:`partly_centred` samples either form at one site; :func:`lone_exponents`
says where a one-family fit uses :func:`bayescale.pooling.lone_exponent`.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

#: A group of this many families or more has its shift sampled centred
#: (:func:`centred_groups`).
CENTRED_GROUP_MIN = 3
#: A family with this many checkpoints has its size exponent sampled centred when
#: its runs span this many sizes, and its token exponent when its checkpoints span
#: this factor in tokens (:func:`centred_exponents`).
CENTRED_EXPONENT_CHECKPOINTS = 20
CENTRED_EXPONENT_SIZES = 3
CENTRED_EXPONENT_TOKEN_SPAN = 4.0


def centred_exponents(inputs, law: str = "chinchilla") -> np.ndarray:
    """Which families have their pooled exponents sampled centred, (F, 2) bool.

    Column 0 is ``alpha_f``, column 1 ``beta_f``. The rule: a family with
    :data:`CENTRED_EXPONENT_CHECKPOINTS` or more checkpoints has ``alpha_f``
    centred when its runs span :data:`CENTRED_EXPONENT_SIZES` or more sizes,
    and ``beta_f`` when its checkpoints span a factor
    :data:`CENTRED_EXPONENT_TOKEN_SPAN` or more in tokens; centred, ``z_alpha``
    is ``log alpha_f``, otherwise ``(log alpha_f - log alpha) / tau_alpha``.
    An exponent the family's own data do not pin is, centred, a funnel whose
    neck is a small ``tau`` (Gadre's five-point families diverged at
    ``tau_alpha`` near 0.003); one they pin lies, non-centred, on a curved
    ridge with ``tau`` (OLMo's token exponent, two sizes but curves over a
    factor 250 in tokens, had R-hat 1.03 so). Under ``law="overtrain"``
    one exponent serves N and D, so either kind of spread pins it and both
    columns say so.
    """
    fam = np.asarray(inputs.run_family)
    of_obs = fam[np.asarray(inputs.obs_run)]
    log_d = np.asarray(inputs.log_d)
    out = np.zeros((inputs.n_families, 2), bool)
    for f in range(inputs.n_families):
        d = log_d[of_obs == f]
        if d.size < CENTRED_EXPONENT_CHECKPOINTS:
            continue
        sizes = np.unique(np.round(np.asarray(inputs.log_n)[fam == f], 6)).size
        out[f] = sizes >= CENTRED_EXPONENT_SIZES, np.ptp(d) >= math.log(CENTRED_EXPONENT_TOKEN_SPAN)
    if law == "overtrain":
        out[:] = out.any(axis=1, keepdims=True)
    return out


def partly_centred(name: str, loc, scale, centred, event_dims: int = 0, weight=None):
    """A ``Normal(loc, scale)`` value sampled as itself where ``centred``, standardised elsewhere.

    Site ``name`` holds the value where ``centred`` is true and
    ``(value - loc) / scale ~ Normal(0, 1)`` elsewhere; returns the value.
    With a ``weight`` ``w`` in [0, 1] every entry is sampled partly centred
    (Papaspiliopoulos et al. 2007) instead: the site holds
    ``z ~ Normal(w loc, scale**w)`` and the value is
    ``loc + scale**(1 - w) (z - w loc)``, itself at ``w = 1`` and
    standardised at ``w = 0``.
    """
    if weight is not None:
        w = float(weight)
        z = numpyro.sample(name, dist.Normal(w * loc, scale**w).to_event(event_dims))
        return loc + scale ** (1.0 - w) * (z - w * loc)
    fn = dist.Normal(jnp.where(centred, loc, 0.0), jnp.where(centred, scale, 1.0))
    z = numpyro.sample(name, fn.to_event(event_dims))
    return jnp.where(centred, z, loc + scale * z)


def centred_groups(inputs) -> np.ndarray:
    """Which groups have their shift sampled centred, (G,) bool.

    The rule: a group of :data:`CENTRED_GROUP_MIN` or more families is
    centred, a smaller one non-centred. The shift of a group of many
    families is pinned by their data, and its non-centred coordinate
    ``z = shift / sigma_group`` then lies on a curved ridge with the scale;
    the shift of a group of one or two families is told apart from its
    families' own offsets only by the priors, where the centred form is a
    funnel.
    """
    sizes = np.bincount(np.asarray(inputs.family_group), minlength=inputs.n_groups)
    return sizes >= CENTRED_GROUP_MIN


def group_coords(effect, sigma, centred) -> np.ndarray:
    """The sampling coordinates ``z_group`` of group shifts ``effect`` (G, 5).

    The shift itself for a centred group, ``effect / sigma`` for the others
    (the inverse of the map in ``model._group_shift``).
    """
    effect = np.asarray(effect)
    return np.where(np.asarray(centred)[:, None], effect, effect / np.asarray(sigma))


def lone_exponents(inputs, exponents: str, law: str = "chinchilla") -> tuple:
    """Per exponent ``(alpha, beta)``, whether it is drawn as a lone family's.

    That is :func:`~bayescale.pooling.lone_exponent`, for pooled exponents of
    the one family of a fit without groups, where its data pin them
    (:func:`centred_exponents`).
    """
    if exponents != "pooled" or inputs.n_families != 1 or inputs.family_group is not None:
        return (False, False)
    return tuple(bool(c) for c in centred_exponents(inputs, law)[0])
