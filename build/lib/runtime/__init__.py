"""Lambda function code; never imports aws_cdk."""
