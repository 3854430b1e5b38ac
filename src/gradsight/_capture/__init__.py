"""Everything that imports torch: walking graphs, reading saved values, summarizing tensors."""
