package io.rbdnbd.engine.stream;

import org.junit.jupiter.api.Test;

import java.util.concurrent.atomic.AtomicInteger;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

class InFlightBudgetTest {

    @Test
    void theBudgetAndEachConnectionsShareAreBounded() {
        InFlightBudget budget = new InFlightBudget(100);
        InFlightBudget.Account a = budget.account(60);
        InFlightBudget.Account b = budget.account(60);
        assertTrue(a.tryAcquire(50));
        assertFalse(a.tryAcquire(20), "over the connection's share");
        assertTrue(b.tryAcquire(50));
        assertFalse(b.tryAcquire(10) && budget.used() > 100, "over the budget");
        assertEquals(100, budget.used());
        a.release(50);
        assertEquals(50, budget.used());
    }

    @Test
    void aRequestLargerThanABoundPassesWhenNothingElseIsHeldUnderIt() {
        InFlightBudget budget = new InFlightBudget(100);
        InFlightBudget.Account a = budget.account(10);
        assertTrue(a.tryAcquire(80), "alone on its connection and the budget");
        assertFalse(a.tryAcquire(1));
        InFlightBudget.Account b = budget.account(10);
        assertFalse(b.tryAcquire(30), "the budget holds 80 already");
        assertTrue(b.tryAcquire(20));
    }

    /** Stages upstream of a connection's end may run on for a moment: what they take must not leak. */
    @Test
    void aClosedAccountGivesEverythingBackAndTakesNothingMore() {
        InFlightBudget budget = new InFlightBudget(100);
        InFlightBudget.Account a = budget.account(100);
        assertTrue(a.tryAcquire(30));
        assertTrue(a.tryAcquire(40));
        a.release(30);
        a.close();
        assertEquals(0, budget.used());
        assertFalse(a.tryAcquire(10), "closed");
        a.release(40); // a reply of the dead connection finishing late
        a.close();
        assertEquals(0, budget.used(), "nothing given back twice");
        InFlightBudget.Account fresh = budget.account(100);
        assertTrue(fresh.tryAcquire(100));
    }

    @Test
    void releasesWakeWaitersOnceEach() {
        InFlightBudget budget = new InFlightBudget(10);
        InFlightBudget.Account a = budget.account(10);
        InFlightBudget.Account b = budget.account(10);
        assertTrue(a.tryAcquire(10));
        assertFalse(b.tryAcquire(5));
        AtomicInteger woken = new AtomicInteger();
        b.onRelease(woken::incrementAndGet);
        a.release(5);
        a.release(5);
        assertEquals(1, woken.get());
        assertTrue(b.tryAcquire(5));
    }

    /** The daemon's budget bounds its devices together; a device waiting on it is woken by another's release. */
    @Test
    void devicesDrawingOnTheDaemonsBudgetStayWithinItTogether() {
        InFlightBudget daemon = new InFlightBudget(100);
        InFlightBudget devA = new InFlightBudget(80, daemon);
        InFlightBudget devB = new InFlightBudget(80, daemon);
        InFlightBudget.Account a = devA.account(80);
        InFlightBudget.Account b = devB.account(80);
        assertTrue(a.tryAcquire(70));
        assertFalse(b.tryAcquire(40), "fits device B but not the daemon");
        assertEquals(0, devB.used(), "a refused request holds nothing in its device");
        AtomicInteger woken = new AtomicInteger();
        b.onRelease(woken::incrementAndGet);
        a.release(30);
        assertTrue(woken.get() >= 1, "device A's release woke device B");
        assertTrue(b.tryAcquire(40));
        assertEquals(80, daemon.used());
        a.close();
        b.close();
        assertEquals(0, daemon.used(), "closing gives the daemon's share back too");
        assertEquals(0, devA.used() + devB.used());
    }
}
