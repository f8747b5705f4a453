"""Deployment: Terraform, the Lambda packaging and the CI checks."""
