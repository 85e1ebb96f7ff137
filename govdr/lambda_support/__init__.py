"""What every govdr Lambda bundle shares: verified TLS to the database (with the pinned RDS CA
roots) and a custom-resource handler's side of the Provider framework. Never imports aws_cdk."""
