"""`python -m training.distributed tf-config ...`: the name the TF_CONFIG command had before
the training package was grouped by role, kept so that Job manifests written for earlier
images keep working. The command lives in `training.pipeline.cluster`."""

import sys

from training.pipeline.cluster import main

if __name__ == "__main__":
    sys.exit(main())
