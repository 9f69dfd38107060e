"""reconciler: GitOps for LLM batch jobs."""
