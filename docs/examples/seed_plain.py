import multiprocessing

class Foo():
    def __init__(self):
        self.b = []
    def __del__(self):
        print('del', flush=True)

def foo():
    print('call foo', flush=True)
    f = Foo()
    a = [f]
    f.b.append(a)

if __name__ == '__main__':
    p = multiprocessing.Process(target=foo)
    p.start()
    p.join()
