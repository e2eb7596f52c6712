"""Control-plane tools: docs_export, scaffold_processor, modalctl."""
