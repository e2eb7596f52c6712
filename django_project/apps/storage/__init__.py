"""The artifact world: ``ArtifactStore`` and its filesystem implementation."""
