"""The ``design`` task: reinforcement learning that runs the experiment."""
