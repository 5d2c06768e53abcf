"""Offline evaluation: methods, simulator, reports (no rclpy)."""
