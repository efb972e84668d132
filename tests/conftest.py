"""Settings shared by the whole suite: offline reference libraries, a quiet Qt, bounded threads."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# Tests run tiny models: one thread is faster than two spinning OpenMP threads, and it keeps
# results independent of the machine's load. Subprocesses (CLI tests) inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
# Keep user folders of the person running the tests untouched.
os.environ.setdefault("NODEGRAPH_TESTING", "1")
