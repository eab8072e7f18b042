import sys

from pam_monai.apps.cli import main

sys.exit(main())
