"""The Ray tests: a package, so that their cluster (``conftest.ray_cluster``, package-scoped)
stops once they are done instead of idling under the rest of the suite."""
