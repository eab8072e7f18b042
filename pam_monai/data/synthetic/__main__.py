"""``python -m pam_monai.data.synthetic OUT_DIR --num-volumes N --shape X Y Z --seed S``."""

from pam_monai.data.synthetic.dataset import main

if __name__ == "__main__":
    raise SystemExit(main())
