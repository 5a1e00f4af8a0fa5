"""Markdown table pieces shared by the bench report writers (perf-drive.sh, store-config.sh)."""


def head(columns, left=1):
    """The header row and separator of a table whose first `left` columns are text
    (left-aligned) and whose other columns are figures (right-aligned)."""
    aligns = ["---"] * left + ["---:"] * (len(columns) - left)
    return ["| " + " | ".join(columns) + " |", "| " + " | ".join(aligns) + " |"]
