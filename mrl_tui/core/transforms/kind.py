"""The one vocabulary of transforms: what the user chooses, what it loads, what it is called.

A user picks ``--transform`` from `CHOICES`; ``auto`` resolves per model (`resolve`) to one of
three kinds. Each kind names the fitted file it loads (``Transform.name`` / ``transform_<name>``)
and how it is shown. Only the standard library is imported here, so ``--help`` can use it.
"""

from __future__ import annotations

from dataclasses import dataclass

from mrl_tui.core.errors import InputError

AUTO = "auto"
NATIVE_MRL = "native MRL"
"""What plain truncation of a native MRL model is called: its prefixes are trained, not cut."""


@dataclass(frozen=True)
class TransformKind:
    choice: str
    """What the user types: "naive", "pca", "adaptor"."""
    fitted: str
    """The name of what it loads (`Transform.name`, the ``transform_<name>`` file): "identity",
    "pca", "adaptor"."""
    label: str
    """How the library names it: "none (naive truncation)", "PCA", "adaptor" (`label_for`)."""
    short: str
    """In pane titles, next to a dim: "naive", "PCA", "adaptor" (`short_for`)."""

    def label_for(self, native_mrl: bool) -> str:
        """`label`, or `NATIVE_MRL` for plain truncation of a native MRL model."""
        return NATIVE_MRL if self is NAIVE and native_mrl else self.label

    def short_for(self, native_mrl: bool) -> str:
        """`short`, or `NATIVE_MRL` for plain truncation of a native MRL model."""
        return NATIVE_MRL if self is NAIVE and native_mrl else self.short


NAIVE = TransformKind("naive", "identity", "none (naive truncation)", "naive")
PCA = TransformKind("pca", "pca", "PCA", "PCA")
ADAPTOR = TransformKind("adaptor", "adaptor", "adaptor", "adaptor")
KINDS = (NAIVE, PCA, ADAPTOR)
CHOICES = (AUTO, *(kind.choice for kind in KINDS))
"""auto: native MRL models as they are, PCA for the rest; naive: truncate as is; pca: always;
adaptor: PCA plus a rotation of its head fitted to the corpus (`core.transforms.adaptor`)."""


def check_choice(choice: str) -> str:
    """`choice` if it is one of `CHOICES`, else an `InputError` naming them."""
    if choice not in CHOICES:
        raise InputError(f"unknown transform {choice!r}; choose one of {CHOICES}")
    return choice


def resolve(choice: str, native_mrl: bool) -> TransformKind:
    """The kind `choice` means for a model: ``auto`` is naive for native MRL models (their
    prefixes are trained), else PCA."""
    if check_choice(choice) == AUTO:
        return NAIVE if native_mrl else PCA
    return kind_for(choice)


def kind_for(choice: str) -> TransformKind:
    """The kind named `choice`: "naive", "pca" or "adaptor" ("auto" needs a model: `resolve`)."""
    for kind in KINDS:
        if kind.choice == choice:
            return kind
    raise InputError(f"{choice!r} names no transform kind; choose one of {CHOICES[1:]}")
