import time

n = 0
while True:
    n += 1  # MARK: loop
    if n % 1000 == 0:
        time.sleep(0.001)
