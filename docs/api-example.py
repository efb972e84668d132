"""Build a graph in code, check it, run it and read its outputs (the README's API example)."""
from nodegraph import api

graph = api.new_graph()
text = api.add_node(graph, "example_pack.PromptTemplate", subject="a lighthouse", style="oil paint")
save = api.add_node(graph, "example_pack.SaveText", filename_prefix="api-example")
graph.connect(text, "text", save, "text")
assert api.validate(graph) == [], api.validate(graph)
result = api.run(graph, out_dir="output", on_event=lambda event: print(type(event).__name__))
print(result.ui[save.id]["files"], result.stats.summary())
api.save(graph, "output/api-example.json")  # reload it with api.load(...) or `nodegraph run`
