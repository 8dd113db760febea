"""Adapters that put mlmyths' components into other people's training stacks.

Each submodule needs an optional extra and imports it when the submodule itself is imported;
``import mlmyths.integrations`` alone imports nothing optional.

- :mod:`mlmyths.integrations.lightning`: :class:`ForgettingCallback`, example forgetting
  during PyTorch Lightning's ``Trainer.fit`` (``pip install mlmyths[lightning]``).
"""
