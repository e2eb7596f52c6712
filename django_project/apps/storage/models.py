"""The world lives in an ArtifactStore, not in the database."""
