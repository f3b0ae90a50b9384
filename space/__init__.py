"""The Gradio app, deployable as a Hugging Face Space: `python -m space` serves, `python -m space deploy` ships it.

Layers: `handlers` (pure functions: classify, explain, compare) over `serving` (the one loaded model),
`endpoints` (each endpoint's route: check, model call, rendering), `app` (the layout), `__main__` (command
line). Nothing here imports `train`.
"""
