"""PR branch targets: clone prod into a branch warehouse, build it, drop it, sweep leftovers (`elt branch ...`)."""
