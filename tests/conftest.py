import os

import hypothesis

# Reproducible, bounded property tests: the default suite must stay fast on 2 cores.
hypothesis.settings.register_profile("default", max_examples=40, deadline=None, derandomize=True)
hypothesis.settings.register_profile("long", max_examples=2000, deadline=None)
hypothesis.settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
