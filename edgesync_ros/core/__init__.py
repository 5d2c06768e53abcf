"""The paper's math and policies as pure, typed modules (no rclpy, no generated messages)."""
