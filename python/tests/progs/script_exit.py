import os
import sys

counter = 0  # MARK: first
for i in range(3):
    counter += i  # MARK: body
print("counter", counter, "main", __name__, os.path.basename(__file__), sys.argv[1:])
print("env", "PYMRI_AGENT_ADDRESS" in os.environ, "PYMRI_AGENT_SECRET_FD" in os.environ)
print("path0", os.path.basename(sys.path[0]))
sys.exit(counter)
