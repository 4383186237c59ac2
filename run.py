"""jetcam_app's entry point: `python run.py --source csi --backend trt` (see README.md)."""
from jetcam_app.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
