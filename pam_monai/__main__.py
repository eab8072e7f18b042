import sys

from pam_monai.cli.main import main

sys.exit(main())
