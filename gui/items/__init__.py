"""Canvas items: nodes, wires, reroute points and groups, all painted by hand."""
