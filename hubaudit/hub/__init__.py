"""Hub stage: enumerate adapters of a base model and read pinned repo metadata (huggingface_hub)."""

from hubaudit.hub.source import HubConfig, HubSource, ListedRepo, RepoFile, RepoInfo

__all__ = ["HubConfig", "HubSource", "ListedRepo", "RepoFile", "RepoInfo"]
