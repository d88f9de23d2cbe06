"""What crosses a layer: the typed records the agent produces and topology,
exporters and the commands consume, and the project's exceptions.  Imports
nothing of taskscope's own."""
