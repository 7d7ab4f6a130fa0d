"""Loggers with the defaults a cluster sweep needs."""

from __future__ import annotations

import netrc
import os
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import WandbLogger


def wandb_credentials_available() -> bool:
    """True when W&B can authenticate: an API key in the environment or a netrc entry for its host."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc_path = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return netrc.netrc(netrc_path).authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


class DistilTrackWandbLogger(WandbLogger):
    """W&B logger that runs offline when there are no credentials (or when asked), instead of
    prompting for a key on a compute node. Sync later with ``wandb sync <save_dir>/wandb/offline-run-*``."""

    def __init__(
        self,
        project: str = "distiltrack",
        group: str | None = None,
        tags: list[str] | None = None,
        name: str | None = None,
        save_dir: str = "outputs",
        offline: bool | None = None,
        log_model: bool = False,
        **kwargs: Any,
    ) -> None:
        if offline is None:
            offline = not wandb_credentials_available()
        Path(save_dir).mkdir(parents=True, exist_ok=True)
        super().__init__(
            project=project, group=group, tags=tags, name=name, save_dir=save_dir, offline=offline,
            log_model=log_model, **kwargs,
        )
