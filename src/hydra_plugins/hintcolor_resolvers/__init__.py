"""Registers hintcolor's config resolvers (:mod:`hintcolor.resolvers`) wherever Hydra runs:
Hydra imports every module under ``hydra_plugins`` when it starts, before it composes, so
``conf/`` can use ``${hintcolor.backbones:}`` in any entry point, test or script."""

from hintcolor.resolvers import register

register()
