"""``vitlib demo``: a trained model behind a web page, and a folder that serves it anywhere.

[`build_demo`][vitlib.demo.build_demo] makes the Gradio page (the top classes of an image, its
attention rollout, the time taken, and the ``/predict`` API endpoint),
[`launch_demo`][vitlib.demo.launch_demo] serves it, [`run_examples`][vitlib.demo.run_examples]
finds example images in the run's test folder, and [`export_demo`][vitlib.demo.export_demo]
writes a folder that runs with ``pip install -r requirements.txt && python app.py`` (a Hugging
Face Space). Gradio is the optional extra ``vitlib[demo]``, imported on use; docs/demo.md says
more.
"""

from __future__ import annotations

from vitlib.demo.app import DemoModel, build_demo, launch_demo
from vitlib.demo.examples import run_examples
from vitlib.demo.export import export_demo

__all__ = ["DemoModel", "build_demo", "export_demo", "launch_demo", "run_examples"]
