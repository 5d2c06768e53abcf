"""Edge and teacher models (torch / onnxruntime; no rclpy)."""
