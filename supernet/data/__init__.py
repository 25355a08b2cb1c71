"""Data sets and batches: small sets held in memory (datasets) and image folders streamed from
disk by worker processes (folder)."""
