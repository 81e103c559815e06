#!/bin/bash
# EC2 user data: installs klaxon-agent on a web server at first boot and starts it.
# The instance profile must carry packaging/iam/agent-policy.json (the CloudFormation
# template's "klaxon-agent" profile). Put the packages where instances can fetch them
# (here an S3 bucket, readable by the instance profile) and set PACKAGES below.
set -euo pipefail
PACKAGES="s3://my-artifacts/klaxon/0.1.0"

if command -v dnf >/dev/null; then            # Amazon Linux 2023
    aws s3 cp "$PACKAGES/klaxon-agent-0.1.0-1.x86_64.rpm" /tmp/klaxon-agent.rpm
    dnf install -y /tmp/klaxon-agent.rpm
else                                          # Debian, Ubuntu
    aws s3 cp "$PACKAGES/klaxon-agent_0.1.0-1_amd64.deb" /tmp/klaxon-agent.deb
    apt-get install -y /tmp/klaxon-agent.deb
fi

# The shipped configuration tails nginx's access and error logs and samples the host;
# adjust /etc/klaxon/agent.toml here if this server logs elsewhere, then check it.
klaxon-agent --config /etc/klaxon/agent.toml --check
systemctl enable --now klaxon-agent
