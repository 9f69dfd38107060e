"""reconciler: GitOps for LLM batch jobs."""

# The name on the package index, wherever a user is told what to install (`pip install
# 'batch-reconciler[postgresql]'`); the import package and the command are `reconciler`.
DISTRIBUTION = "batch-reconciler"
