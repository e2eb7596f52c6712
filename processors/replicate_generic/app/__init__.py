"""replicate/generic@1: any Replicate model, through the replicate SDK."""
