# Remote state: an S3 bucket (versioned, encrypted, private) and a DynamoDB lock table, both made
# once per account outside this configuration. The values come from backend.hcl at init:
#
#   cp backend.hcl.example backend.hcl   # edit bucket, key, region, table
#   terraform init -backend-config=backend.hcl
#
# CI checks run `terraform init -backend=false`, which skips this block.
terraform {
  backend "s3" {}
}
