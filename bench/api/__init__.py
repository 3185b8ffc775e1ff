"""The plug-in API: what a loss or task module builds on.

- ``bench.api.loss``: the ``Loss`` base class and the helpers losses share (shapes, dtypes, parameter checks).
- ``bench.api.params``: a loss's hyper-parameters, read from its constructor's signature.
- ``bench.api.task``: ``TaskMetadata`` and the ``Task`` base class (cleaning and the stratified split).
- ``bench.api.task_sources``: ``HubTask`` (a Hugging Face dataset) and ``FileTask`` (your own CSV or JSON Lines file).

Plug-ins import these names through ``losses.base`` and ``tasks.base``, which re-export them. Nothing here imports a
plug-in, so the core (the trainer, the runner) depends on this package and never on ``losses/`` or ``tasks/``.
"""
