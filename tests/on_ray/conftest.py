"""The Ray tests' cluster: ``raycluster.ray_session``, package-scoped, shared by every module here."""

from raycluster import ray_session  # noqa: F401 - the fixture, registered for this package
